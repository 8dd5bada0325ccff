"""Will HAProxy start? What ``haproxy -c`` does not check: file descriptors.

At start HAProxy raises its open-file limit to what the configuration needs
and exits if it cannot ("Cannot raise FD limit to N, limit is L"), while
``haproxy -c`` accepts the same configuration: a reload would then leave the
old worker serving and every later change stuck. Measured on 2.6.12 (under
``ulimit -n``): N = health-checked servers + 2 x maxconn + listeners + 3 per
thread + about 20, where maxconn is the configured one or, when unset, at
least 100 (HAProxy derives it from the limit). A disabled server with
``check`` counts as well. So this is checked before a candidate is swapped
in, against the hard limit HAProxy will inherit from us.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from haproxy_ingress.model import AppliedState

# HAProxy's floor for a derived maxconn, and its own fixed descriptors
# (stats and master sockets, pollers, wake-up pipes), with room to spare.
MIN_MAXCONN = 100
FIXED = 64
PER_THREAD = 3


def descriptors_needed(target: AppliedState, listeners: int, threads: int) -> int:
    """The open files HAProxy asks for at start with ``target``'s configuration."""
    structure = target.structure
    checked = checked_slots(target)
    maxconn = structure.settings.maxconn or MIN_MAXCONN
    return checked + 2 * maxconn + listeners + PER_THREAD * threads + FIXED


def checked_slots(target: AppliedState) -> int:
    """Health-checked servers, the passthrough pool's included.

    A slot added at run time (plan.AddServer) counts as it will once a
    reload declares it, and so does its twin, which has a check of its own
    until then (as have the twins of declared slots added when a backend
    reached two slots). HAProxy sized its limit at start without them: they
    share the room of 2 x maxconn with the connections (see README).
    """
    layouts = (*target.structure.backends, *target.structure.passthrough)
    total = 0
    for layout in layouts:
        settings = layout.settings
        if settings.health_check:
            slots = len(target.servers.get(layout.name, ()))
            added = max(0, slots - layout.slots)
            twins = 0
            if settings.twins_at(slots):
                twins = added if settings.twins_at(layout.slots) else added + layout.slots
            total += layout.slots + added + twins
    return total


@dataclass(frozen=True)
class Budget:
    """What a plan may ask of HAProxy's file descriptors (see plan.plan)."""

    limit: int
    listeners: int
    threads: int

    def needed(self, target: AppliedState) -> int:
        return descriptors_needed(target, self.listeners, self.threads)


def descriptor_limit() -> int | None:
    """The hard open-file limit HAProxy inherits (None: unlimited)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else int(hard)


def threads() -> int:
    """HAProxy's default thread count: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def refusal(target: AppliedState, listeners: int, limit: int | None) -> str | None:
    """An ``[ALERT]``-style line if HAProxy could not start ``target``, else None."""
    if limit is None:
        return None
    needed = descriptors_needed(target, listeners, threads())
    if needed <= limit:
        return None
    checked = checked_slots(target)
    maxconn = target.structure.settings.maxconn
    return (
        f"[ALERT] (controller) : HAProxy would need {needed} file descriptors "
        f"({checked} health-checked server slots, maxconn "
        f"{maxconn if maxconn else f'{MIN_MAXCONN} at least'}) but its limit is {limit}: "
        "it would not start. Lower server-slots or maxconn, turn health-check off for "
        "large backends, or raise the limit (ulimit -n, LimitNOFILE)."
    )
