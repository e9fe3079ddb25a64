"""Helpers shared by the test tiers: real nats-server processes, never a fake broker."""
