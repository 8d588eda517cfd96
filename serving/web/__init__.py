"""The recruiters' web page, served by the service itself (see `serving.web.pages`)."""
