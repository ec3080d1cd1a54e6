"""The libvirt layer of webkvm. It never imports Django (a test enforces it)."""
