"""sculpt.replay"""
