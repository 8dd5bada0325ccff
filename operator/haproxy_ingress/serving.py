"""What the backends of a desired state can serve, in numbers and in words (pure).

Two questions an operator asks that the desired state answers: how many pods
are in each state (a pod behind two Service ports, or two Ingresses, is one
pod), and why a backend answers 503 (no usable server at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from haproxy_ingress.model import Backend, DesiredState, ServerState

# Where one pod has endpoints in several states (impossible for one address in
# one EndpointSlice world, but slices can disagree for a moment), the most
# serving state counts.
_PRECEDENCE = (ServerState.READY, ServerState.DRAIN, ServerState.MAINT)


def backends(desired: DesiredState) -> tuple[Backend, ...]:
    """The desired state's backends, each ssl-passthrough host's pods as one more.

    A passthrough host's pool backend is chosen by the plan, so it is named
    by its host here (for logs and counts only).
    """
    return (*desired.backends, *passthrough_backends(desired))


def passthrough_backends(desired: DesiredState) -> tuple[Backend, ...]:
    """Each ssl-passthrough host's pods as a backend (new objects at every call)."""
    return tuple(
        Backend(f"{p.host} (ssl-passthrough)", p.service, desired.settings.backend, p.endpoints)
        for p in desired.passthrough
    )


def endpoint_counts(backends: Iterable[Backend]) -> dict[str, int]:
    """Pods (distinct addresses) per state, over every backend."""
    states: dict[str, set[ServerState]] = {}
    for backend in backends:
        for endpoint in backend.endpoints:
            states.setdefault(endpoint.address, set()).add(endpoint.state)
    counts = {state.value: 0 for state in _PRECEDENCE}
    for seen in states.values():
        best = next(state for state in _PRECEDENCE if state in seen)
        counts[best.value] += 1
    return counts


def unusable(backends: Iterable[Backend]) -> dict[str, str]:
    """Backend name → why it has no server that takes new requests."""
    reasons: dict[str, str] = {}
    for backend in backends:
        service = f"Service {backend.service.namespace}/{backend.service.name}"
        port = backend.service.port
        if not backend.endpoints:
            reasons[backend.name] = (
                f"{service} port {port}: its EndpointSlices list no endpoint "
                "(no Pod matches the selector, no Pod has an IP, or the port is not exposed)"
            )
            continue
        if any(e.state is ServerState.READY for e in backend.endpoints):
            continue
        by_state: dict[str, int] = {}
        for endpoint in backend.endpoints:
            by_state[endpoint.state.value] = by_state.get(endpoint.state.value, 0) + 1
        detail = ", ".join(f"{count} {state}" for state, count in sorted(by_state.items()))
        reasons[backend.name] = (
            f"{service} port {port}: no endpoint is ready ({detail}: terminating or "
            "failing their readiness probe)"
        )
    return reasons


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(backend, reason) for each backend that became unusable or changed reason,
    and (backend, None) for each that has a usable server again."""
    result: list[tuple[str, str | None]] = [
        (name, reason) for name, reason in sorted(after.items()) if before.get(name) != reason
    ]
    result += [(name, None) for name in sorted(set(before) - set(after))]
    return result
