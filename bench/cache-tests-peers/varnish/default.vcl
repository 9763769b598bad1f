# Varnish for bench/cache-tests-peers/run.sh. http-cache-tests 0.4.5 ships no Varnish config of its own:
# its docker image (docker/Dockerfile, setup.sh, serve.sh) uses the Debian/Ubuntu package's default
# /etc/varnish/default.vcl unchanged except for the backend port (setup.sh: sed s/8080/8000/), and starts
#   varnishd -j unix -a 0.0.0.0:8005 -f /etc/varnish/default.vcl \
#            -p default_ttl=0 -p default_grace=0 -p default_keep=3600 -s malloc,64M
# run.sh starts it the same way (-a 127.0.0.1:@PORT@, plus -F to stay in the foreground and -n for a
# scratch working dir). This file is the package's default.vcl with only the backend changed:
# 127.0.0.1:@ORIGIN_PORT@ (was 127.0.0.1:8080, the image's 8000), the suite's origin on its free port.
vcl 4.1;

# Default backend definition. Set this to point to your content server.
backend default {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
}

sub vcl_recv {
    # Happens before we check if we have this in cache already.
}

sub vcl_backend_response {
    # Happens after we have read the response headers from the backend.
}

sub vcl_deliver {
    # Happens when we have all the pieces we need, and are about to send the
    # response to the client.
}
