"""From a campaign to messages: planning runs and enrolling their targets, assigning
variants, cron slots, the delivery ledger, send-time policy (and the WeChat interaction
window), rendering in a budgeted sandbox, tracking links and their tokens."""
