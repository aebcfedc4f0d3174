"""stemgui.audio"""
