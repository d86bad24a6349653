"""Label Store: labelled training images for computer-vision teams.

The package root imports nothing, so any room can be imported on its own; the app is built by
app.factory.create_app (main.py and the command line call it).
"""
__version__ = "0.1.0"
