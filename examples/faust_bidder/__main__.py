"""``python -m examples.faust_bidder worker``: the bidder as a Faust worker (env BIDDER_*)."""

import os

from .app import FaustBidder

bidder = FaustBidder.create(
    os.environ.get("BIDDER_BROKER", "127.0.0.1:9092"),
    app_id=os.environ.get("BIDDER_APP_ID", "faust-bidder"),
    partitions=int(os.environ.get("BIDDER_PARTITIONS", "4")),
)
app = bidder.app

if __name__ == "__main__":
    app.main()
