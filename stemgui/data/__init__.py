"""stemgui.data"""
