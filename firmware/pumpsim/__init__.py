"""The one physical model of the bench pump, shared by every simulated rig (see model.py)."""
