"""The custom webhook provider ("webhook sites"): signed POSTs in, signed POSTs out."""
