"""One module per panel; each has ``router`` (an APIRouter). `app.create_app` includes every module of
`ROUTE_MODULES`; a later chapter adds its panel as one module and one entry here."""

ROUTE_MODULES = (
    "imagexplore.web.routes.collection",
    "imagexplore.web.routes.classify",
    "imagexplore.web.routes.edges",
    "imagexplore.web.routes.segment",
    "imagexplore.web.routes.similar",
    "imagexplore.web.routes.text",
    "imagexplore.web.routes.translate",
    "imagexplore.web.routes.swap",
)
