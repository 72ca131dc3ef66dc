"""Drills and game days: inject a fault, measure detection and recovery, restore always.

``faults``  inject/revert pairs, registered by name so a separate process can revert them
``guard``   the restoration guard: reverts survive SIGKILL, crashes and hard timeouts
``record``  phases with timestamps, measured RTO/RPO against targets, the sign-off record
"""
