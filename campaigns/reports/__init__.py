"""What happened: campaign and funnel reports, customer and channel reports, statistics, CSV export."""
