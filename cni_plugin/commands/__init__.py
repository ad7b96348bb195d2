"""One module per CNI command; each has run(request) -> result dict or None."""
