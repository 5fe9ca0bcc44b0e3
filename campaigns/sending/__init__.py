"""From a campaign to messages: planning runs, assigning variants, cron schedules, the
delivery ledger, send-time policy, rendering, tracking links and tokens."""
