"""Campaigns: what a campaign is (:mod:`.model`), where campaigns, their tracked links
and their events are kept (:mod:`.store`, :mod:`.sqlite`)."""
