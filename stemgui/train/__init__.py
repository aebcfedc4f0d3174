"""stemgui.train"""
