#!/usr/bin/env python3
"""Joins two JSON-lines timing files (ours, peer) on (accountant, q, sigma, steps, delta) and
prints a Markdown table with the median times and their ratio."""
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            key = (r["accountant"], round(r["q"], 10), round(r["sigma"], 10), r["steps"], r["delta"])
            rows[key] = r
    return rows


def main():
    ours, peer = load(sys.argv[1]), load(sys.argv[2])
    print("| accountant | q | σ | steps | ε ours | ε dp_accounting | ours (ms) | dp_accounting (ms) | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in ours.items():
        p = peer.get(key)
        if p is None:
            continue
        mine, theirs = r["median_s"] * 1e3, p["median_s"] * 1e3
        print(f"| {key[0]} | {key[1]:.5g} | {key[2]:.5g} | {key[3]} | {r['epsilon']:.4f} | "
              f"{p['epsilon']:.4f} | {mine:.2f} | {theirs:.1f} | {theirs / mine:.0f}× |")


if __name__ == "__main__":
    main()
