"""Tests of apps/ (the trajectory explorer)."""
