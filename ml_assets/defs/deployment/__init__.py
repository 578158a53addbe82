"""Deployment: bundles, the champion, batch predictions and live performance."""
