"""sculpt.decide"""
