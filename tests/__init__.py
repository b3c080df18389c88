"""Test package: lets test modules import the shared kit as ``tests.kit``."""
