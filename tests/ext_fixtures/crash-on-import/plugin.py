"""Dies the hard way while loading (as a segfaulting native library would): no exception to catch."""
import os

os._exit(3)
