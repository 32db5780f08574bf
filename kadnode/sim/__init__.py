"""The simulator: many node cores on one seeded virtual network and clock."""
