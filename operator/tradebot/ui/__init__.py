"""The fleet page: a read-only web view of the records and the cluster (`tradebot ui`), and the
same pages as static files (`tradebot report --html DIR`). views.py builds what each page shows
(pure), pages.py reads the records and the cluster, render.py turns a view into HTML,
server.py serves it."""
