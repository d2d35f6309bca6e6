"""cmh.objectives: what training minimises, chosen by name (``--objective``).

    registry     Objective (what an objective owns) and the registry: register, get, names
    triplet_loss the cross-modal triplet ranking loss as pure torch functions
    triplet      the triplet objective (the reference's), registered as "triplet"
    dcmh_loss    DCMH's objective as pure functions, and the buffers F, G, B it keeps
    dcmh         DCMH's alternating epoch, registered as "dcmh"
    proxy        hash proxies (DSPH's loss, its proxies and their SGD), registered as "proxy"
"""

from cmh.objectives import dcmh, proxy, triplet  # noqa: F401  (each registers itself)
from cmh.objectives.registry import (  # noqa: F401
    Objective,
    get_objective,
    objective_names,
    register_objective,
    registered_objectives,
    unregister_objective,
)
