"""The hostile-conditions battery (issue 10): websockets under fuzzing, slow readers, every way a
session can end, and a soak across two instances. Bounded in ``make test``; ``make soak`` runs
the long forms (``CARTSYNC_SOAK=1``)."""
