"""Timed jobs: deadline reminders, the DPO digest, escalation and retention."""
