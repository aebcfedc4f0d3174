"""stemgui.models"""
