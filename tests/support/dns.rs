//! A DNS server on loopback that answers SRV queries from a table the test
//! changes, as a Kubernetes or Consul name server would for a service's
//! instances.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The server; it stops when dropped.
pub struct TestDns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<HashMap<String, Vec<u16>>>> = Arc::default();
        let table = records.clone();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                if let Some(answer) = answer(&buffer[..len], &table) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Self {
            addr,
            records,
            task,
        }
    }

    /// Makes `name` (fully qualified, ending in `.`) point at these ports
    /// on 127.0.0.1; none makes it exist with no instances.
    pub fn set(&self, name: &str, ports: &[u16]) {
        self.records
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), ports.to_vec());
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(query: &[u8], table: &Mutex<HashMap<String, Vec<u16>>>) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    let ports = table.lock().unwrap().get(&name).cloned();
    match (ports, question.query_type()) {
        (Some(ports), RecordType::SRV) => {
            for (i, port) in ports.iter().enumerate() {
                let target = Name::from_str(&format!("instance{i}.{name}")).ok()?;
                let srv = SRV::new(10, 10, *port, target.clone());
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    1,
                    RData::SRV(srv),
                ));
                let a = A(Ipv4Addr::LOCALHOST);
                response.add_additional(Record::from_rdata(target, 1, RData::A(a)));
            }
        }
        (Some(_), _) => {}
        (None, _) => response.metadata.response_code = ResponseCode::NXDomain,
    }
    response.to_vec().ok()
}
