"""Receivers of provider callbacks: delivery receipts, replies and other responses."""
