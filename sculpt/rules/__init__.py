"""sculpt.rules"""
