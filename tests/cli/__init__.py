"""Tests of the `pointsbridge` command-line tool."""
