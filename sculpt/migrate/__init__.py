"""sculpt.migrate"""
