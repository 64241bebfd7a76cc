"""The executor: the only code that changes the world, and its verification."""
