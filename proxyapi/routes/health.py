"""Liveness: answers without a key and never calls a provider."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

bp = Blueprint("health", __name__)
PUBLIC_ENDPOINTS = ("health.health",)


@bp.get("/health")
def health() -> Response:
    """Report that the process is up."""
    return jsonify(status="ok")
