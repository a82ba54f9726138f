# The reference scenario's Crystal backend (App Mesh cross-VPC walkthrough), standard library only.
#
#   GET /crystal      -> "Crystal backend: Hello! from <IP> in <AZ>\n"   (text/plain)
#   GET /crystal/api  -> {"from": IP, "zone": AZ, "service": "crystal", "hostname", "time"}
#   GET /health       -> "Healthy!\n"
#   anything else     -> 404; methods other than GET/HEAD on the paths above -> 405;
#   a malformed request -> 400 (answered by HTTP::Server's parser before any handler runs).
#
# Environment: PORT (default 3000; 0 picks a free port), BIND_ADDRESS (default 0.0.0.0),
# HOST_IP (the address to report; default: the host's first non-loopback IPv4, see HostAddress),
# AZ (the zone to report; default "unknown").
# Prints "listening on ADDR:PORT" once it accepts connections, then one access line per request
# on stdout. SIGTERM/SIGINT: closes the listener and exits 0.
require "http/server"
require "json"
require "socket"

# getifaddrs(3), which Crystal 1.6's LibC does not bind. Layout of struct ifaddrs from glibc's
# <ifaddrs.h>; only the fields read here matter, the rest keep the offsets right.
lib LibIfaddrs
  struct Ifaddrs
    ifa_next : Ifaddrs*
    ifa_name : LibC::Char*
    ifa_flags : LibC::UInt
    ifa_addr : LibC::Sockaddr*
    ifa_netmask : LibC::Sockaddr*
    ifa_ifu : LibC::Sockaddr*
    ifa_data : Void*
  end

  fun getifaddrs(ifap : Ifaddrs**) : LibC::Int
  fun freeifaddrs(ifa : Ifaddrs*) : Void
end

# Crystal 1.6's request parser answers a bad request line or an oversized head with 400/414/431
# itself, but a malformed Content-Length raises ArgumentError out of HTTP::Request.from_io: the
# connection's fiber dies ("Unhandled exception in spawn") and the client gets no answer. Here
# that becomes a 400 and a closed connection. Only parsing raises ArgumentError out of process
# (exceptions of the handler are rescued inside it), so no response has been started for this
# request when it lands here.
class HTTP::Server::RequestProcessor
  def process(input, output) : Nil
    previous_def
  rescue ex : ArgumentError
    body = "400 Bad Request\n"
    begin
      output << "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: " \
                << body.bytesize << "\r\nConnection: close\r\n\r\n" << body
      output.flush
    rescue IO::Error
    end
    STDOUT.puts "#{Time.utc.to_rfc3339(fraction_digits: 3)} - " \
                "\"(malformed request: #{ex.message})\" 400 #{body.bytesize} 0.0ms"
  end
end

# HTTP::Server sets no read timeout: a client that goes quiet (an idle keep-alive connection, or a
# peer speaking another protocol whose bytes never make a line) would hold its fiber and socket
# for ever. 60 s, as the frontend and the Node.js backend allow, then the connection is closed.
class HTTP::Server
  private def handle_client(io : IO)
    io.read_timeout = 60.seconds if io.is_a?(Socket)
    previous_def
  end
end

module HostAddress
  IFF_UP      = 0x1_u32
  IFF_RUNNING = 0x40_u32

  # The address this host is reached at: HOST_IP if set, else the first IPv4 address that is not
  # loopback (127/8) nor link-local (169.254/16) of an interface that is up and running, in the
  # kernel's interface order (getifaddrs(3)). Reading the interfaces needs no route, so it works
  # in a network namespace whose only interface is a veth with no default route.
  def self.discover : String
    if ip = ENV["HOST_IP"]?.presence
      return ip
    end
    first_interface_ipv4 || "127.0.0.1"
  end

  private def self.first_interface_ipv4 : String?
    return nil if LibIfaddrs.getifaddrs(out head) != 0
    begin
      entry = head
      while entry
        ifa = entry.value
        up = (ifa.ifa_flags & IFF_UP) != 0 && (ifa.ifa_flags & IFF_RUNNING) != 0
        sa = ifa.ifa_addr
        if up && sa && sa.value.sa_family == LibC::AF_INET
          ip = Socket::IPAddress.from(sa, sizeof(LibC::SockaddrIn)).address
          return ip unless ip.starts_with?("127.") || ip.starts_with?("169.254.")
        end
        entry = ifa.ifa_next
      end
      nil
    ensure
      LibIfaddrs.freeifaddrs(head)
    end
  end
end

SERVICE = "crystal"
IP      = HostAddress.discover
ZONE    = ENV["AZ"]?.presence || "unknown"

GREETING = "Crystal backend: Hello! from #{IP} in #{ZONE}"

def respond(ctx : HTTP::Server::Context, status : Int32, type : String, body : String) : Int32
  response = ctx.response
  response.status_code = status
  response.content_type = type
  response.content_length = body.bytesize
  # HTTP::Server writes whatever the handler prints, HEAD included: hold the body back here.
  return 0 if ctx.request.method == "HEAD"
  response.print(body)
  body.bytesize
end

def handle(ctx : HTTP::Server::Context) : Int32
  request = ctx.request
  path = request.path
  unless {"/crystal", "/crystal/api", "/health"}.includes?(path)
    return respond(ctx, 404, "text/plain; charset=utf-8", "Not Found\n")
  end
  unless {"GET", "HEAD"}.includes?(request.method)
    ctx.response.headers["Allow"] = "GET, HEAD"
    return respond(ctx, 405, "text/plain; charset=utf-8", "Method Not Allowed\n")
  end
  case path
  when "/health"
    respond(ctx, 200, "text/plain; charset=utf-8", "Healthy!\n")
  when "/crystal/api"
    doc = {
      "from"     => IP,
      "zone"     => ZONE,
      "service"  => SERVICE,
      "hostname" => System.hostname,
      "time"     => Time.utc.to_rfc3339(fraction_digits: 3),
    }
    respond(ctx, 200, "application/json", doc.to_json + "\n")
  else
    respond(ctx, 200, "text/plain; charset=utf-8", GREETING + "\n")
  end
end

STDOUT.sync = true

server = HTTP::Server.new do |ctx|
  started = Time.monotonic
  bytes = handle(ctx)
  request = ctx.request
  client = request.remote_address.as?(Socket::IPAddress).try(&.address) || "-"
  ms = (Time.monotonic - started).total_milliseconds
  # One line per request: time, client, request line, status, body bytes, duration.
  STDOUT.puts "#{Time.utc.to_rfc3339(fraction_digits: 3)} #{client} \"#{request.method} " \
              "#{request.resource} #{request.version}\" #{ctx.response.status_code} #{bytes} " \
              "#{ms.round(1)}ms"
end

port_env = ENV["PORT"]?.presence || "3000"
port = port_env.to_i? || abort("crystal backend: PORT=#{port_env} is not a port number")
bind = ENV["BIND_ADDRESS"]?.presence || "0.0.0.0"

begin
  address = server.bind_tcp(bind, port)
rescue ex : Socket::Error
  abort("crystal backend: cannot listen on #{bind}:#{port}: #{ex.message}")
end

{Signal::TERM, Signal::INT}.each do |signal|
  signal.trap do
    STDOUT.puts "crystal backend: SIG#{signal}, exiting"
    server.close
  end
end

STDOUT.puts "crystal backend: listening on #{address.address}:#{address.port} as #{IP} in #{ZONE}"
server.listen
exit 0
