"""sculpt.demoapp"""
