"""A real systemd user manager with redis-server and a Celery worker and beat, for tests and demos.

Nothing here is used by healer itself: it is the test bench healer is proven on.
"""
