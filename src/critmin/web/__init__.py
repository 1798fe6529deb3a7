"""The web application and its HTTP API (``critmin serve``): the top layer, built on results, metrics and
reports; nothing below imports it."""
