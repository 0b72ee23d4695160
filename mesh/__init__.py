"""The mesh protocol: wire, membership, election, anti-entropy sync, discovery."""
