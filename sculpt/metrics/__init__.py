"""sculpt.metrics"""
