"""A Faust bidder that reads ``bid-signals`` and ``campaign-roi-latest`` (docs/bidding.md)."""
