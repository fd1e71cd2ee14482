"""sculpt.providers"""
