"""Helpers shared by the test folders: plain references, test data and script runners."""
