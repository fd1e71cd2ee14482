"""sculpt.app"""
