"""gunicorn settings for bench/web.py: each worker settles its start-up objects as
`helpdesk serve` does (helpdesk.serving.settle), so the bench measures what is served."""


def post_worker_init(worker: object) -> None:
    from helpdesk.serving import settle

    settle()
