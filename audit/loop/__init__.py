"""Closing the loop after an audit: what to label next (:mod:`audit.loop.queue`) and how to augment
the next training run (:mod:`audit.loop.recipe`), both read from a finished run folder."""
