"""Equation discovery (SINDy-style); lands with its issue."""
