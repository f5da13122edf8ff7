"""How fast and how politely requests go.

The shared limiter, the circuit breaker, adaptive control and the retry policy.
"""
