"""Notifications: Block Kit rendering, the Slack integrations and the outbox sender."""
