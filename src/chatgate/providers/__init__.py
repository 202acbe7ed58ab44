"""One subpackage per provider, each implementing the adapter protocol in `base.py`."""
