"""The GrAInS Studio app: panels (layout and wiring), named API endpoints, session actions, HTML views and input
checks. Rendering comes from grains.viz and every algorithm from grains."""
